"""AWS in: read AMI volumes through the EBS direct APIs."""
