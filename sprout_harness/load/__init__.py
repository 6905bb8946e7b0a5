"""Load generation: YCSB distributions and workloads, CRUD mixes, the closed/open-loop driver."""
