"""The producing side: synthetic launches, the sensors that see them, and the events they emit.

``trajectory`` flies a missile; ``geometry`` and ``areas`` answer where things are and what a
sensor can see; ``sensors`` turns a flight into contract events; ``scenario`` loads a scenario
file and runs it as a pure, deterministic event generator (no Kafka).
"""
