"""Azure target: fixed VHD → page blob → managed disk → managed image → VM (ARM)."""
