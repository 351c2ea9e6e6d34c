"""The HTTP surface (Litestar): routes per CONTRACT.md, errors mapped once."""
