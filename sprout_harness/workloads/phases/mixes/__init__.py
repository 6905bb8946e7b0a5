"""Suite `mixes`: operation mixes through the load driver, CRUD (`crud`, its operation
streams in `crud_mixes`) and YCSB A-F (`ycsb`, the workloads' definitions and operation
streams in `ycsb_workloads`)."""
