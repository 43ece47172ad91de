"""The code the stages share: config, Parquet store, the domain protocol and its
implementations, the student, the model-call client layer. Never imports tasks/ or flows/."""
