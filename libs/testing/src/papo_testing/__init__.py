"""Test support shared by papo's test suites. Never imported by a service at run time."""
