"""Training through a spec's objectives (`mmspec fit`): synthetic or file batches, the step loop with
alternating update groups and EMA teachers, torch.distributed (DDP or FSDP), safetensors checkpoints."""
