"""Wireshark support: the EFD dissector (efd.lua) and a pcap capture tool (capture.py)."""
