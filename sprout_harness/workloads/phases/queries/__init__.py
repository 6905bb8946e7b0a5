"""Suite `queries`: generated queries checked against the reference evaluator."""
