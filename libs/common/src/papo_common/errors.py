"""How a handler says what should happen to a message it could not process."""


class PermanentError(Exception):
    """Retrying cannot help (bad input, a number not on WhatsApp): the message goes straight to its
    dead-letter queue with this error as the reason. Any other exception is retried by redelivery, up to the
    queue's delivery limit, and then dead-lettered too."""


class DependencyUnavailable(Exception):
    """A dependency (broker, Redis, PostgreSQL, an upstream API) is down. Retrying later can help."""
