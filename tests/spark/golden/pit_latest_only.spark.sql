WITH ev AS (
  SELECT
    `customer_id` AS __key,
    _event_time_us AS __et,
    _seq AS __seq,
    _ingested_at_us AS __ing,
    `flag` AS `v_flag`,
    `item` AS `v_item`,
    `qty` AS `v_qty`
  FROM events
  WHERE
    NOT `customer_id` IS NULL
    AND (
      (
        `flag` = TRUE
      ) OR (
        `flag` IS NULL
      )
    )
), q AS (
  SELECT
    __row,
    __key,
    __t
  FROM entity_rows
), joined AS (
  SELECT
    q.*
    EXCEPT (__key),
    ev.*
    EXCEPT (__key)
  FROM q
  JOIN ev
    ON ev.__key = q.__key AND ev.__et <= q.__t
), a AS (
  SELECT
    __row,
    MAX_BY(
      STRUCT(`v_item` AS v0, `v_qty` AS v1),
      (
        CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
      )
    ) FILTER(WHERE
      TRUE) AS __latest
  FROM joined
  GROUP BY
    __row
)
SELECT
  q.__row,
  a.__latest.v0 AS `item_now`,
  a.__latest.v1 AS `qty_now`
FROM entity_rows AS q
LEFT JOIN a
  ON a.__row = q.__row
