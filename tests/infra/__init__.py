"""Infrastructure tests: the CDK app synthesized and checked, never deployed."""
