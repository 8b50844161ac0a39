"""Cloud providers behind a tiny interface written from the planner's side."""
