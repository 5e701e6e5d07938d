-- The shop database the SQL verifier builds (in memory) for every check.
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER, category TEXT);
INSERT INTO products VALUES
  (1, 'pen', 1.5, 120, 'office'),
  (2, 'desk', 120.0, 4, 'office'),
  (3, 'lamp', 25.0, 0, 'office'),
  (4, 'apple', 0.5, 300, 'food'),
  (5, 'pear', 0.5, 80, 'food'),
  (6, 'coffee', 7.0, 40, 'food'),
  (7, 'cable', 9.0, 15, 'electronics'),
  (8, 'mouse', 19.0, 0, 'electronics');
CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER, category TEXT);
