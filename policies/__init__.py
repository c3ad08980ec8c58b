"""Declarative YAML policies and the engine that compiles and evaluates them."""
