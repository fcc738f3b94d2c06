"""Events over Kafka: CloudEvents envelope, transactional outbox, inbox, consumers."""
