"""papo debounce: one burst per quiet period, ordered by when things were said, flushed exactly once."""
