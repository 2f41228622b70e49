"""Host simulator: drives the firmware's own detection modules (firmware/lib/efd) with
synthetic waveforms through an ADC model. Nothing here re-implements detection."""
