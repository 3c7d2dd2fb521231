"""A voice note's bytes, from wherever Evolution API put them, on every channel.

When the webhook carried no inline `base64` (ingest keeps it in the attachment when it did), the note is
fetched with the common Evolution client (`papo_common.evolution`), with the key of the instance it came
through:
- `message.mediaUrl`, set when Evolution stores media in S3 (any channel; on `EVOLUTION`, what its feeder
  posted): a plain GET, without the API key;
- otherwise `POST /chat/getBase64FromMediaMessage/{instance}` with the webhook's whole `data`: Baileys
  decrypts the note from WhatsApp's CDN, the `WHATSAPP-BUSINESS` channel downloads it from Meta's Graph API
  (by the media `id` in `audioMessage`, reading `messageType` first). The `EVOLUTION` channel has no such
  method ("Method not available"): there a note without inline bytes or a media URL cannot be heard.

Failures follow the one classification: transient ones are retried here, then the message is redelivered
with backoff; a rejected or missing key is a configuration error, logged loudly and redelivered until the
horizon (fixable, so the note is not lost meanwhile); what Evolution can never provide is an `AudioRejected`.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from papo_common.evolution import (
    EvolutionClient,
    EvolutionRejected,
    MediaTooLarge,
    RetryPolicy,
    call_with_retries,
)
from papo_transcribe.audio import AudioRejected

logger = logging.getLogger(__name__)


def media_url(webhook_data: dict[str, Any]) -> str | None:
    """The S3 URL Evolution published for the media, if any."""
    message = webhook_data.get("message")
    url = message.get("mediaUrl") if isinstance(message, dict) else None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


class VoiceNoteMedia:
    """Fetches the bytes of notes that did not travel inline, within `max_bytes`."""

    def __init__(self, client: EvolutionClient, *, max_bytes: int, policy: RetryPolicy) -> None:
        self._client = client
        self._max_bytes = max_bytes
        self._policy = policy

    async def fetch_base64(self, instance: str, webhook_data: dict[str, Any]) -> str:
        """The note's bytes as base64. Raises `AudioRejected` when they cannot be had, and
        `DependencyUnavailable` (`EvolutionUnavailable`, `EvolutionMisconfigured`) when they may later."""
        url = media_url(webhook_data)

        async def fetch() -> str:
            if url is not None:
                return base64.b64encode(await self._client.download(url, max_bytes=self._max_bytes)).decode()
            return await self._client.media_base64(instance, webhook_data, max_bytes=self._max_bytes)

        what = "media URL" if url is not None else "getBase64FromMediaMessage"
        try:
            return await call_with_retries(fetch, self._policy, what=what)
        except MediaTooLarge as error:
            raise AudioRejected(f"audio is larger than the {self._max_bytes}-byte limit") from error
        except EvolutionRejected as error:  # expired, deleted, not media, or a channel without the method
            raise AudioRejected(f"Evolution could not provide the audio ({error})") from error
