#!/usr/bin/env python3
"""A throwaway VPC, subnet and security group in moto for the writer's ECS service
(moto's ECS checks that a service's subnets exist).

  moto_network.py create PREFIX   > network.json
  moto_network.py delete network.json
"""
import json
import sys

import boto3


def create(prefix):
    ec2 = boto3.client("ec2")
    tags = [{"ResourceType": t, "Tags": [{"Key": "Name", "Value": prefix}]} for t in ("vpc", "subnet", "security-group")]
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16", TagSpecifications=[tags[0]])["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.1.0/24", TagSpecifications=[tags[1]])["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(
        GroupName=f"{prefix}-writer", Description="writer (terraform check)", VpcId=vpc, TagSpecifications=[tags[2]]
    )["GroupId"]
    print(json.dumps({"vpc_id": vpc, "subnet_id": subnet, "security_group_id": sg}))


def delete(path):
    net = json.load(open(path))
    ec2 = boto3.client("ec2")
    ec2.delete_security_group(GroupId=net["security_group_id"])
    ec2.delete_subnet(SubnetId=net["subnet_id"])
    ec2.delete_vpc(VpcId=net["vpc_id"])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("create", "delete"):
        sys.exit(__doc__)
    (create if sys.argv[1] == "create" else delete)(sys.argv[2])
