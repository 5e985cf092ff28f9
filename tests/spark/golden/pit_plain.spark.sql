WITH ev AS (
  SELECT
    `customer_id` AS __key,
    _event_time_us AS __et,
    _seq AS __seq,
    _ingested_at_us AS __ing,
    `amount` AS `v_amount`,
    `kind` AS `v_kind`
  FROM events
  WHERE
    NOT `customer_id` IS NULL AND (
      `kind` <> 'it\'s a \\ kind'
    )
), q AS (
  SELECT
    __row,
    __key,
    __t,
    (
      (
        __t - 60000000
      ) - (
        (
          (
            __t - 60000000
          ) % 1000000
        ) + 1000000
      ) % 1000000
    ) AS __l0
  FROM entity_rows
), joined AS (
  SELECT
    q.*
    EXCEPT (__key),
    ev.*
    EXCEPT (__key)
  FROM q
  JOIN ev
    ON ev.__key = q.__key AND ev.__et <= q.__t AND ev.__et > q.__l0
), a AS (
  SELECT
    __row,
    COUNT(*) FILTER(WHERE
      __et > __l0) AS `n_1m`,
    COALESCE(SUM(`v_amount`) FILTER(WHERE
      __et > __l0 AND NOT `v_amount` IS NULL), 0.0) AS `spend_1m`
  FROM joined
  GROUP BY
    __row
)
SELECT
  q.__row,
  COALESCE(a.`n_1m`, 0) AS `n_1m`,
  COALESCE(a.`spend_1m`, 0.0) AS `spend_1m`
FROM entity_rows AS q
LEFT JOIN a
  ON a.__row = q.__row
