"""Who may purge metadata (ITI-62 Remove Metadata): a pure decision over the verified VIHF.

ITI-62 is not the DMP's "supprimer un document" (that is an ITI-57 status change to Deleted,
governed by the rights matrix, :mod:`.access`): it erases registry objects for good, leaving no
version, status or association behind. In the DMP only the host's physicians (médecins de
l'hébergeur) may do that, outside the care relationship, so the matrix has no row for it.
Until the DMP's own rules for it land (issue 5), the rule is an explicit list of national
identifiers, ``DMP_XDS_PURGE_AUTHORISED``, and it is **empty by default**: out of the box no one
can purge, and a deployment has to name its purging physicians to allow it.

Why these conditions:

* the caller's ``NameID`` (:attr:`Principal.name_id`, the professional's IdNat as the VIHF
  states it, e.g. ``8`` + RPPS) must be in the list, compared exactly: the list is the authority,
  and an approximate match (case, spaces, a missing type prefix) would let a near-miss through;
* the VIHF must present the caller as a physician (TRE_G15 profession 10): the rule names
  physicians, and a listed identifier arriving with another profession is a configuration or
  identity mix-up worth refusing rather than guessing about;
* the access mode must be normal: break-glass and centre 15 accesses exist for emergency care,
  which never requires destroying a record's metadata, and a purge made under them would hide
  behind an emergency justification;
* a call that did not go through the security layer (no principal) is refused.

What may be purged is decided here too (:func:`purgeable`): only a document deleted in the
DMP, for ITI-62 and ``dmp-xds purge`` alike.

Nothing here does I/O; the table test is tests/unit/test_policy_purge.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ..metadata import vocabulary as v
from ..security.principal import AccessMode, Principal
from .access import ALLOW, MEDECIN, Decision, deny
from .facts import PROFESSION_SYSTEM


def may_purge(principal: Principal | None, authorised: Collection[str]) -> Decision:
    """May this caller remove registry objects (ITI-62)? ``authorised`` is the configured list
    of national identifiers (``DMP_XDS_PURGE_AUTHORISED``)."""
    if principal is None:
        return deny("no verified caller")
    if not authorised:
        return deny("no professional is authorised to remove metadata on this server")
    if principal.name_id not in authorised:
        return deny(f"professional {principal.name_id} is not authorised to remove metadata")
    profession = principal.profession
    if (profession.code, profession.system) != (MEDECIN, PROFESSION_SYSTEM):
        return deny("only physicians may remove metadata")
    if principal.access_mode is not AccessMode.NORMAL:
        return deny(f"metadata cannot be removed in {principal.access_mode.value} access mode")
    return ALLOW


def operator_may_purge(actor_id: str | None, authorised: Collection[str]) -> Decision:
    """May the operator command ``dmp-xds purge --by <actor_id>`` purge a document?

    Run on the server host, it has no VIHF to check: the operator names the hosting physician
    on whose decision the purge is made, and that physician must be in the same list as for
    ITI-62 (exact match, empty list: nobody). What is purged is decided elsewhere (only
    documents whose every version is Deleted, registry/purge.py).
    """
    if not actor_id:
        return deny("the purging physician is not named")
    if not authorised:
        return deny("no professional is authorised to remove metadata on this server")
    if actor_id not in authorised:
        return deny(f"professional {actor_id} is not authorised to remove metadata")
    return ALLOW


def purgeable(versions: Iterable[tuple[int, str]]) -> Decision:
    """May a document be erased for good? ``versions``: (version, availability status) of
    every version of one logical document.

    Only a document deleted in the DMP (ITI-57 status update to Deleted): its latest version
    is Deleted, and the earlier ones are Deleted or Deprecated (what a metadata update leaves
    behind it). A document still visible, archived or merely replaced is never purged by
    mistake: it has to be deleted first, by whoever the rights matrix lets delete it.
    """
    ordered = sorted(versions)
    if not ordered:
        return deny("the document has no version")
    latest = ordered[-1][0]
    kept = [
        f"version {number} is {status.rsplit(':', 1)[-1]}"
        for number, status in ordered
        if status != v.DELETED and (number == latest or status != v.DEPRECATED)
    ]
    if kept:
        return deny(
            f"{', '.join(kept)}; only a document whose latest version is Deleted (ITI-57 "
            "status update) can be purged"
        )
    return ALLOW
