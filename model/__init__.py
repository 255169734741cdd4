"""The five-modality trainer: encoders, all-to-all InfoNCE and retrieval evaluation."""
