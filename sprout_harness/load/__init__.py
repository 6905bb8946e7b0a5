"""Load generation: YCSB request distributions, the closed/open-loop driver, worker fleets, the
webhook receiver. The operation streams of the mixes live with their phases
(`workloads.phases.mixes`)."""
