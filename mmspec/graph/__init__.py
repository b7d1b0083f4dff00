"""Spec -> nn.Module tree -> torch.fx GraphModule."""
