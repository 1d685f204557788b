"""The quality benchmark: ``run`` trains and tests variants over seeds and writes the report that ``table``,
``paired``, ``buckets``, ``by_target``, ``cases`` and ``report`` compute; ``merge`` joins parallel invocations;
``unseen_swap``, ``cold_content``, ``xattn_probe`` and ``by_popularity`` are the cold-item and attention probes."""
