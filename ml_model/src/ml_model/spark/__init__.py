"""Apache Spark for ml-model (the ``spark`` extra and a Java 17 runtime): building a session
(``session``), and the jobs that run on it, such as batch scoring as Spark tasks (``score``).
pyspark is imported only inside this package, and only when used."""
