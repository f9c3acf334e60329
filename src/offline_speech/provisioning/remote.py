"""Where and as whom to download: the hub endpoint, the user's token (memory only), the asset mirror.

Built only when something must be asked online; the all-cached path never builds one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import settings


@dataclass(frozen=True)
class Remote:
    """The hub (None = huggingface.co), the token to send (never written anywhere), the non-hub asset mirror."""

    endpoint: str | None = None
    token: str | None = None
    asset_mirror: str | None = None

    @classmethod
    def from_settings(cls, asset_mirror: str | None = None) -> Remote:
        """The remote the environment names: HF_ENDPOINT, the user's token, --asset-mirror or its variable."""
        return cls(settings.hub_endpoint(), settings.user_token(), settings.asset_mirror(asset_mirror))

    @property
    def hub_url(self) -> str:
        return (self.endpoint or "https://huggingface.co").rstrip("/")

    def api(self):
        """A huggingface_hub client for this endpoint and token (imports huggingface_hub)."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token or False)
