//! statsd metrics: metric name builders (reference §5) and a small client wrapper.
//! (Being filled in.)
