"""analytics: windowed figures of results and deliveries per tenant and category (faust), served from Redis."""
