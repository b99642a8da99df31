"""Record and replay (issue #6): capture the warning topics into Avro container files and
re-emit them later, with their original timing, into the same or another cluster.

- :mod:`trilink.replay.format`: the recording file format, writing (rolling, crash-safe blocks)
  and damage-tolerant reading.
- :mod:`trilink.replay.recorder`: ``trilink record``, a group-less consumer into a writer.
- :mod:`trilink.replay.replayer`: ``trilink replay``, planning, rebasing and paced sending.
- :mod:`trilink.replay.make_recordings`: how the shipped recordings in ``trilink/replay/recordings/`` are made.
"""
