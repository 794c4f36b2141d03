"""Streaming vocoders: HiFi-GAN V1 and MelGAN generators built from convtrans's parts."""
