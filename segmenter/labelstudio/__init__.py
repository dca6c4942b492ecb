"""Label Studio access: the REST client with its retry policy, which Label Studio and key a project
uses, and fetching task data (with a download cache)."""
