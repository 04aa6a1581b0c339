"""The one price table: approximate public on-demand list prices, per region, with the date they are for.

Written from AWS's public pricing pages (https://aws.amazon.com/sagemaker/pricing/, …/lambda/pricing/,
…/step-functions/pricing/, …/s3/pricing/) as known on AS_OF; not fetched at run time (a deploy calls no pricing
API). They are list prices in USD before tax, free tier, savings plans or spot discounts: good to a few per
cent, never more. A region or instance type missing here gets no estimate, said so, rather than a guess.

`scones.deploy.cost` does the arithmetic and the printing, for the deploy's estimate and for `scones cost`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AS_OF = "2026-12-02"
SOURCE = "https://aws.amazon.com/sagemaker/pricing/"
HOURS_PER_MONTH = 730  # AWS's own convention on its pricing pages (8,760 h / 12)


@dataclass(frozen=True)
class Table:
    region: str
    as_of: str
    # SageMaker, USD per instance-hour, by use: training | hosting (real-time endpoint) | processing
    training: dict[str, float] = field(default_factory=dict)
    hosting: dict[str, float] = field(default_factory=dict)
    processing: dict[str, float] = field(default_factory=dict)
    serverless_gb_s: float | None = None  # serverless inference: USD per second of compute per GB of memory
    lambda_gb_s: float | None = None  # Lambda (x86) duration, USD per GB-second
    lambda_per_million: float | None = None  # Lambda requests, USD per million
    sfn_standard_per_thousand: float | None = None  # Step Functions Standard, USD per 1,000 state transitions
    sfn_express_per_million: float | None = None  # Step Functions Express requests, USD per million
    sfn_express_gb_s: float | None = None  # Step Functions Express duration, USD per GB-second (first tier)
    s3_put_per_thousand: float | None = None  # S3 Standard PUT, COPY, POST, LIST requests, USD per 1,000
    s3_get_per_thousand: float | None = None  # S3 Standard GET and other requests, USD per 1,000
    s3_gb_month: float | None = None  # S3 Standard storage, USD per GB-month (first 50 TB)

    def hourly(self, use: str, instance_type: str) -> float | None:
        """USD per hour of one instance for `use` (training | hosting | processing); None when not listed."""
        return getattr(self, use).get(instance_type)


TABLES = {
    "us-east-1": Table(
        region="us-east-1",
        as_of=AS_OF,
        training={
            "ml.m5.large": 0.115,
            "ml.m5.xlarge": 0.23,
            "ml.g4dn.xlarge": 0.736,
            "ml.p3.2xlarge": 3.825,
        },
        hosting={
            "ml.t2.medium": 0.056,
            "ml.m5.large": 0.115,
            "ml.m5.xlarge": 0.23,
            "ml.g4dn.xlarge": 0.736,
        },
        processing={  # every size scones.deploy.requests.MONITOR_INSTANCES may choose
            "ml.m5.large": 0.115,
            "ml.m5.xlarge": 0.23,
            "ml.m5.2xlarge": 0.461,
            "ml.m5.4xlarge": 0.922,
        },
        serverless_gb_s=0.00002,
        lambda_gb_s=0.0000166667,
        lambda_per_million=0.20,
        sfn_standard_per_thousand=0.025,
        sfn_express_per_million=1.00,
        sfn_express_gb_s=0.00001667,
        s3_put_per_thousand=0.005,
        s3_get_per_thousand=0.0004,
        s3_gb_month=0.023,
    ),
}


def table(region: str) -> Table | None:
    """The region's table, or None when this project holds no prices for it."""
    return TABLES.get(region)
