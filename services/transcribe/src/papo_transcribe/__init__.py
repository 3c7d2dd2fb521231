"""papo's transcribe service: turns WhatsApp voice notes into `Transcript`s with Whisper."""
