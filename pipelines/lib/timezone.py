"""The product's business calendar: metrics days and retention dates are Asia/Tokyo days."""

BUSINESS_TIMEZONE = "Asia/Tokyo"
