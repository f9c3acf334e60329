"""Hub errors as one line each: what the hub (or the network) said about a repo, and what to do.

Nothing here guesses: a gated repo is reported gated only when the hub answered 401/403 for it, so a mirror that
serves it without a token just works, and a network that is down is reported as such.
"""

from __future__ import annotations

from ..catalog import Model
from .remote import Remote

# Exception classes (by name, anywhere in the chain) that mean the hub was never reached: httpx/httpx2 transport
# errors, the socket's own, and huggingface_hub's offline mode.
_UNREACHABLE = {"TransportError", "ConnectionError", "TimeoutError", "gaierror", "OfflineModeIsEnabled"}


def describe_hub_error(exc: BaseException, model: Model, remote: Remote, commit: str | None = None) -> str:
    """One line saying what went wrong with a hub request for `model` (at `commit`, when one was asked for instead
    of the catalog's revision) and what to do about it."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{remote.hub_url}/{model.repo}"
    status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
    if isinstance(exc, GatedRepoError):
        return gated_message(model, remote, have_token=bool(remote.token))
    if isinstance(exc, RepositoryNotFoundError):
        return f"{model.repo} not found on {remote.hub_url} (or private: a token with access is needed)"
    if isinstance(exc, RevisionNotFoundError):
        if commit:
            return (
                f"{model.repo} has no commit {commit[:12]} on {remote.hub_url} (gone from its history?): "
                f"./cache-models.sh --update {model.key} takes the newest instead"
            )
        return f"{model.repo} has no revision {model.revision} ({page})"
    if model.gated and status in (401, 403):  # a proxy that refuses without saying GatedRepo
        return gated_message(model, remote, have_token=bool(remote.token))
    if isinstance(exc, HfHubHTTPError):
        return f"hub answered HTTP {status or '?'} for {model.repo}: {_first_line(exc)}"
    if unreachable(exc):
        return (
            f"cannot reach {remote.hub_url} for {model.repo} ({type(exc).__name__}: {_first_line(exc)}): check "
            "the network, or HF_ENDPOINT for a mirror; what is cached keeps working offline"
        )
    return f"cannot download {model.repo} from {remote.hub_url}: {type(exc).__name__}: {_first_line(exc)}"


def unreachable(exc: BaseException) -> bool:
    """Whether an exception (or one it was raised from) says the hub could not be reached at all."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not hang
        if seen is None:
            return False
        if _UNREACHABLE & {cls.__name__ for cls in type(seen).__mro__}:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def gated_message(model: Model, remote: Remote, have_token: bool) -> str:
    """The hub refused a gated repo: where to accept its licence, and how to give a token (once: the models load
    offline without one)."""
    page = f"{remote.hub_url}/{model.repo}"
    if have_token:
        return (
            f"{model.repo} is gated and this token has no access: accept its licence at {page} with the token's "
            "account (loading it offline later needs no token)"
        )
    return (
        f"{model.repo} is gated: accept its licence at {page}, then give a token once (`hf auth login`, or "
        "export HF_TOKEN=hf_...); loading it offline later needs no token"
    )
