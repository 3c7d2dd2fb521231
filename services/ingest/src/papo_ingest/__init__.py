"""papo's webhook receiver: Evolution API webhooks in, confirmed and deduplicated InboundMessages out."""
