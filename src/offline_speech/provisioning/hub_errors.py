"""Hub errors as one line each: what went wrong with a repo (gated, not found, no such revision) and what to do."""

from __future__ import annotations

from ..catalog import Model
from .remote import Remote


def describe_hub_error(exc: BaseException, model: Model, remote: Remote) -> str:
    """One line saying what went wrong with a hub request and what to do about it."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{remote.hub_url}/{model.repo}"
    if isinstance(exc, GatedRepoError):
        return gated_message(model, remote, have_token=bool(remote.token))
    if isinstance(exc, RepositoryNotFoundError):
        return f"{model.repo} not found on {remote.hub_url} (or private: a token with access is needed)"
    if isinstance(exc, RevisionNotFoundError):
        return f"{model.repo} has no revision {model.revision} ({page})"
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return f"hub answered HTTP {status} for {model.repo}: {str(exc).splitlines()[0]}"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"cannot download {model.repo} from {remote.hub_url}: {type(exc).__name__}: {first}"


def gated_message(model: Model, remote: Remote, have_token: bool) -> str:
    """Where to accept a gated repo's licence, and how to give a token if none was given."""
    page = f"{remote.hub_url}/{model.repo}"
    if have_token:
        return f"{model.repo} is gated and this token has no access: accept its licence at {page} with the account of the token"
    return (
        f"{model.repo} is gated: accept its licence at {page}, then give a token "
        "(export HF_TOKEN=hf_... or `hf auth login`)"
    )
