"""deliver: sends each reply through Evolution API, paced like a person, exactly once per reply."""
