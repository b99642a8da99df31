"""trilink: an engineering model of trilateral real-time missile-warning data sharing."""

__version__ = "0.1.0"
