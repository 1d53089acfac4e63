# The EC2 equivalents of deploy/gcp's two VMs: the GPU host (g4dn.xlarge: 4 vCPU, 16 GB, one
# T4) and the gateway (t3.small), their security groups, and the gateway's role with exactly
# what orchestrator/gateway/providers/aws.py calls. Not yet automated here, unlike GCP: the
# boot (deploy/gcp/startup.sh reads GCE metadata and Secret Manager); deploy/README.md, "AWS",
# gives the steps by hand and says why.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "name" {
  type    = string
  default = "vo"
}

variable "host_instance_type" {
  description = "g4dn.xlarge (1 T4, ~$0.526/h in us-east-1); g5.xlarge for an A10G 24 GB, g6.xlarge for an L4."
  type        = string
  default     = "g4dn.xlarge"
}

variable "gateway_instance_type" {
  description = "t3.small; t3.large (8 GB) with the cold-start bridge."
  type        = string
  default     = "t3.small"
}

variable "host_disk_gb" {
  type    = number
  default = 100
}

data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }
}

# Canonical's Ubuntu 24.04 LTS, as deploy/gcp uses (the NVIDIA driver from Ubuntu's archive).
data "aws_ssm_parameter" "ubuntu" {
  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

resource "aws_security_group" "gateway" {
  name        = "${var.name}-gateway"
  description = "voice-orchestrator gateway: HTTPS from anywhere"
  vpc_id      = data.aws_vpc.default.id
  ingress {
    description = "HTTPS (Caddy)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# The host's API from the gateway only. No SSH port on either: Session Manager instead.
resource "aws_security_group" "host" {
  name        = "${var.name}-gpu-host"
  description = "voice-orchestrator GPU host: the API from the gateway only"
  vpc_id      = data.aws_vpc.default.id
  ingress {
    description     = "voice API from the gateway"
    from_port       = 11400
    to_port         = 11400
    protocol        = "tcp"
    security_groups = [aws_security_group.gateway.id]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "gateway" {
  name               = "${var.name}-gateway"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role" "host" {
  name               = "${var.name}-gpu-host"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

# Start and stop on the host only; DescribeInstances cannot be narrowed to one instance.
data "aws_iam_policy_document" "host_power" {
  statement {
    actions   = ["ec2:StartInstances", "ec2:StopInstances"]
    resources = [aws_instance.host.arn]
  }
  statement {
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "gateway_host_power" {
  name   = "host-power"
  role   = aws_iam_role.gateway.id
  policy = data.aws_iam_policy_document.host_power.json
}

resource "aws_iam_role_policy_attachment" "ssm" {
  for_each   = { gateway = aws_iam_role.gateway.name, host = aws_iam_role.host.name }
  role       = each.value
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "gateway" {
  name = "${var.name}-gateway"
  role = aws_iam_role.gateway.name
}

resource "aws_iam_instance_profile" "host" {
  name = "${var.name}-gpu-host"
  role = aws_iam_role.host.name
}

# The host keeps a public IPv4 for its downloads only (nothing is admitted but the gateway):
# a NAT gateway would cost ~$33 a month, more than the T4 itself at 2 h a day.
resource "aws_instance" "host" {
  ami                    = data.aws_ssm_parameter.ubuntu.value
  instance_type          = var.host_instance_type
  subnet_id              = data.aws_subnets.default.ids[0]
  vpc_security_group_ids = [aws_security_group.host.id]
  iam_instance_profile   = aws_iam_instance_profile.host.name
  root_block_device {
    volume_size = var.host_disk_gb
    volume_type = "gp3"
  }
  metadata_options {
    http_tokens = "required" # IMDSv2 only
  }
  tags = { Name = "${var.name}-gpu-host" }
}

resource "aws_instance" "gateway" {
  ami                    = data.aws_ssm_parameter.ubuntu.value
  instance_type          = var.gateway_instance_type
  subnet_id              = data.aws_subnets.default.ids[0]
  vpc_security_group_ids = [aws_security_group.gateway.id]
  iam_instance_profile   = aws_iam_instance_profile.gateway.name
  root_block_device {
    volume_size = 20
    volume_type = "gp3"
  }
  metadata_options {
    http_tokens = "required"
  }
  tags = { Name = "${var.name}-gateway" }
}

resource "aws_eip" "gateway" {
  instance = aws_instance.gateway.id
  domain   = "vpc"
}

output "gateway_ip" {
  value = aws_eip.gateway.public_ip
}

output "gateway_provider_config" {
  description = "The [gateway.provider] table for the gateway's gateway.toml."
  value       = "kind = \"aws\"\nregion = \"${var.region}\"\ninstance_ids = [\"${aws_instance.host.id}\"]\nport = 11400\n"
}

output "host_private_ip" {
  value = aws_instance.host.private_ip
}
