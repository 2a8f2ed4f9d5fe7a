"""Dispatch: the OpenADR 3 VTN that sends programs and events to VENs and takes their reports."""
