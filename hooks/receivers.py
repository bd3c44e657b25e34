"""Domain signal -> transactional outbox (Event + Delivery rows)."""
