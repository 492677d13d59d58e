"""Graph nodes: `(state, runtime) -> partial update` functions and the typed state and context they
share. A step two graphs need (tone refinement, retrieval, output checks, memory write) is written
once here; domain logic (rules, classifiers, checks) lives in the domain packages below."""
