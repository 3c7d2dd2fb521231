"""papo's llm service: turns a person's burst into one reply, with the conversation's history."""
