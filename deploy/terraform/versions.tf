terraform {
  # Optional object attributes with defaults and preconditions need 1.3.
  required_version = ">= 1.3"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.x: data.aws_region's `region` attribute.
      version = "~> 6.0"
    }
  }
}
