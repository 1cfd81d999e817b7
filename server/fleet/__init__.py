"""Fleet-wide read models for operators: counts, versions, presence over time, problems,
and the change notices a live page listens to. Pure rules in ``problems``, ``buckets``
and ``changes``; database reads in ``overview`` and ``live``."""
