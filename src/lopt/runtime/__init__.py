"""The process a long job runs in: JAX's persistent compilation cache (``compilation_cache``),
headroom under the kernel's limit on memory mappings (``mappings``), and stopping cleanly on
SIGINT/SIGTERM (``stopping``)."""
