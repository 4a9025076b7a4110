"""Hash chains: the tamper evidence under the documents' issuance log, the audit trail and the
gateway's audit log lines.

Each link's hash covers the link's fields (sorted-key JSON, ASCII) followed by the previous
link's hash, which is also one of the fields. Changing, removing or reordering any link breaks
the hash of every link after it, so a head hash kept somewhere else (a log line, a witness)
pins everything before it. The first link's previous hash is ``GENESIS``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

GENESIS = "0" * 64


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes a link's hash covers; ``fields`` must hold ``prev_hash``."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return body.encode("ascii") + str(fields["prev_hash"]).encode("ascii")


def link_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(fields)).hexdigest()


def shown(digest_hex: str) -> str:
    """A hash as logs and commands show it: base32 (letters and the digits 2-7), so no run of
    it reads like an ID or mobile number to the personal-data masking, which would otherwise
    blot out part of a hex hash now and then (as ``servicekit.context`` ids avoid too)."""
    return base64.b32encode(bytes.fromhex(digest_hex)).decode().rstrip("=").lower()


def advisory_key(name: bytes) -> int:
    """A ``pg_advisory_xact_lock`` key from eight bytes of name, as a positive bigint."""
    return int.from_bytes(name, "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    entries: int
    head_hash: str
    broken_at: int | None = None  # the first position that does not verify
    problem: str | None = None


def walk(links: Iterable[T], position: Callable[[T], int],
         fields: Callable[[T], dict[str, Any]],
         also: Callable[[T], str | None] | None = None) -> ChainCheck:
    """Check links read in chain order: positions 1, 2, 3… with none missing, each naming the
    previous link's hash, each hash recomputed from ``fields`` (which must hold the link's
    ``prev_hash``); ``also`` may find one more problem in a link. Links carry ``prev_hash``
    and ``entry_hash`` attributes."""
    prev, count = GENESIS, 0
    for link in links:
        count += 1
        at = position(link)
        problem = None
        if at != count:
            problem = f"expected position {count}, found {at} (an entry is missing)"
        elif link.prev_hash != prev:  # type: ignore[attr-defined]
            problem = "prev_hash does not match the previous entry"
        elif link.entry_hash != link_hash(fields(link)):  # type: ignore[attr-defined]
            problem = "entry_hash does not match the entry (the entry was altered)"
        elif also is not None:
            problem = also(link)
        if problem:
            return ChainCheck(False, count, prev, broken_at=at, problem=problem)
        prev = link.entry_hash  # type: ignore[attr-defined]
    return ChainCheck(True, count, prev)


#: the fields a chained audit log line's hash covers besides its place: the gateway's
#: refusals and the services' granted reads alike; a field a line lacks is covered as null,
#: so one taken out of a line breaks it as surely as one changed
AUDIT_LINE_FIELDS = ("at", "decision", "status", "problem", "method", "path", "route",
                     "objects", "actor", "roles", "client_ip")


class LogChain:
    """A hash chain through one process's audit log lines, for what is not written to a
    database (the gateway's refusals, the services' granted reads): each line carries its
    chain's id, its place and its hash (in base32, ``shown``), so a line changed or removed
    from the collected logs breaks its chain (``verify_lines`` with ``AUDIT_LINE_FIELDS``).
    Each process starts a chain of its own (a forked worker too)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._start()
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self.chain = f"{self.name}-{os.getpid()}-{base64.b32encode(os.urandom(5)).decode()}"
        self.seq = 0
        self.prev = GENESIS

    def link(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields to add to the next line, whose own ``fields`` (JSON values) the hash
        covers, each of ``AUDIT_LINE_FIELDS`` (null where absent)."""
        covered = {name: fields.get(name) for name in AUDIT_LINE_FIELDS}
        with self._lock:
            self.seq += 1
            digest = link_hash({**covered, "chain": self.chain, "seq": self.seq,
                                "prev_hash": self.prev})
            linked = {"chain": self.chain, "seq": self.seq, "prev_hash": shown(self.prev),
                      "hash": shown(digest)}
            self.prev = digest
        return linked


@dataclass(frozen=True)
class _Line:
    """A chained log line as ``walk`` reads links: its place, and its hashes back in hex."""

    seq: int
    prev_hash: str
    entry_hash: str
    fields: dict[str, Any]


def _hex(value: object) -> str:
    """A hash as ``shown`` wrote it, back in hex ("" if it is no such thing)."""
    text = str(value or "").upper()
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8)).hex()
    except ValueError:
        return ""


def verify_lines(lines: Iterable[dict[str, Any]], covered: Sequence[str]) -> dict[str, ChainCheck]:
    """Check the chained lines (parsed JSON log lines that carry ``chain``), chain by chain;
    ``covered`` names the fields each line's hash covers besides its place."""
    found: dict[str, list[_Line]] = {}
    for line in lines:
        if "chain" in line:
            found.setdefault(str(line["chain"]), []).append(_Line(
                int(line["seq"]), _hex(line.get("prev_hash")), _hex(line.get("hash")),
                {name: line.get(name) for name in covered}))
    return {chain: walk(sorted(links, key=lambda link: link.seq), lambda link: link.seq,
                        lambda link, chain=chain: {**link.fields, "chain": chain,
                                                   "seq": link.seq,
                                                   "prev_hash": link.prev_hash})
            for chain, links in found.items()}
