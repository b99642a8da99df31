"""How to run trilink: the topic list, the Kafka broker's Maven project and log config, Prometheus.

A package only so that the files trilink reads at run time (``topics.toml``, ``kafka/``,
``prometheus/prometheus.yml`` and ``prometheus/rules/``) ship inside the wheel and are found
through :func:`trilink.resources.package_path`; it holds no code. Material no command reads
(the Grafana dashboards, the Prometheus rule tests, the install scripts) stays in the
repository only.
"""
