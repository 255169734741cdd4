"""The Beam-free ground floor: errors, reject reasons, the sample format, geodesy, file access."""
