"""Suite `sprout`: create, fetch, live-limit, writers, churn."""
