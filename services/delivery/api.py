"""delivery's HTTP routes: the signed-in account's portal inbox."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters

from servicekit.access import current_claims, roles
from servicekit.paging import paginated
from servicekit.service import runtime
from services.delivery import usecases
from services.delivery.models import Notification
from services.delivery.schemas import InboxSchema, NotificationSchema

blp = Blueprint("delivery", __name__, description="The portal inbox")


@blp.route("/inbox")
class Inbox(MethodView):
    @roles()
    @blp.response(200, InboxSchema)
    @paginated(blp)
    def get(self, pagination_parameters: PaginationParameters) -> dict[str, object]:
        """My notifications, newest first, and how many are unread.

        A page at a time (``X-Pagination``); ``unread`` counts all of them.
        """
        items, unread = usecases.inbox_of(runtime().db, current_claims()["sub"],
                                          pagination_parameters)
        return {"unread": unread, "items": items}


@blp.route("/inbox/<notification_id>/read")
class MarkRead(MethodView):
    @roles()
    @blp.response(200, NotificationSchema)
    def post(self, notification_id: str) -> Notification:
        """Mark one of my notifications read."""
        return usecases.mark_read(runtime().db, current_claims()["sub"], notification_id)
