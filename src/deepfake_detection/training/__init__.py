"""Running a training job: the pipeline, its callbacks and the artifacts it writes."""
