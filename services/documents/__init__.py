"""documents:
court documents: rendering, anti-counterfeit codes, seals, hashes and public verification.

Routes (served without the gateway's ``/api/documents`` prefix):

* ``POST /seals`` (court_admin of that court), ``GET /seals/<court>`` (that court's staff)
* ``GET /documents?application_id=`` (staff), ``GET /documents/<id>`` and
  ``GET /documents/<id>/pdf`` (staff of the court; the document's viewers once published;
  anyone else 404)
* ``GET /verify/<code>`` (HTML or JSON) and ``POST /verify`` (upload a PDF): public

Events: consumes ``matters.certificate.requested`` (render and issue) and
``matters.application.completed`` (publish); emits ``documents.document.issued`` and
``documents.render.failed``.

Modules: ``codes`` (the anti-counterfeit code), ``fonts`` (the embedded CJK font),
``render`` + ``stamp`` (the PDF and its seal), ``blobs`` (content-addressed storage),
``ledger`` (the hash-chained issuance log), ``issuance`` (the handlers' logic),
``usecases`` (seals, downloads), ``verification`` (public checks), ``config`` (settings).
"""
